// TLS on the gRPC port with certificates the test makes: a client with the
// right CA connects; one without it, or a plaintext one, is refused; with
// --tls-client-ca the server also requires a client certificate.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { credentials, status } from "@grpc/grpc-js";
import { createAdminClient, createClient } from "@ratequeue/client";
import { ListResourcesRequestSchema } from "@ratequeue/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { adminMethods, RawClient } from "./support/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const dir = mkdtempSync(join(tmpdir(), "ratequeue-tls-"));
const f = (name: string) => join(dir, name);
const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA; plus a stranger CA. */
function makeCertificates(): void {
  for (const ca of ["ca", "other-ca"]) {
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=ratequeue test ${ca}`, "-keyout", f(`${ca}.key`), "-out", f(`${ca}.pem`));
  }
  writeFileSync(f("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  writeFileSync(f("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const who of ["server", "client"]) {
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=ratequeue test ${who}`, "-keyout", f(`${who}.key`), "-out", f(`${who}.csr`));
    openssl("x509", "-req", "-in", f(`${who}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f(`${who}.ext`), "-out", f(`${who}.pem`));
  }
}

const listing = create(ListResourcesRequestSchema, {});
const tlsArgs = () => ["--tls-cert", f("server.pem"), "--tls-key", f("server.key")];

beforeAll(() => {
  makeCertificates();
});

describe("server TLS", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServerProcess({ config: { resources: { r: { concurrency: 1 } } }, args: tlsArgs() });
  });
  afterAll(async () => {
    await server.stop();
  });

  test("a client with the right CA connects over https://", async () => {
    const url = `https://127.0.0.1:${server.port}`;
    const client = createClient({ url, caFile: f("ca.pem") });
    const lease = await client.acquire("r", { timeoutMs: 5000 });
    expect(await lease.release()).toBe("released");
    await client.close();
    const admin = createAdminClient({ url: `https://localhost:${server.port}`, caFile: f("ca.pem") });
    expect((await admin.listResources()).map((r) => r.name)).toEqual(["r"]);
    admin.close();
  });

  test("a client without the CA, with another CA, or in plaintext is refused", async () => {
    const at = `127.0.0.1:${server.port}`;
    for (const creds of [credentials.createSsl(), credentials.createSsl(readFileSync(f("other-ca.pem"))), credentials.createInsecure()]) {
      const raw = new RawClient(at, { creds });
      const out = await raw.call(adminMethods.listResources, listing, 3000);
      expect(out.ok).toBe(false);
      if (!out.ok) expect(out.code).toBe(status.UNAVAILABLE);
      raw.close();
    }
  });
});

test("--tls-client-ca: only clients with a certificate signed by that CA connect", async () => {
  const server = await startServerProcess({ args: [...tlsArgs(), "--tls-client-ca", f("ca.pem")] });
  try {
    const at = `127.0.0.1:${server.port}`;
    const without = new RawClient(at, { creds: credentials.createSsl(readFileSync(f("ca.pem"))) });
    const refused = await without.call(adminMethods.listResources, listing, 3000);
    expect(refused.ok).toBe(false);
    without.close();
    const stranger = new RawClient(at, {
      creds: credentials.createSsl(readFileSync(f("ca.pem")), readFileSync(f("other-ca.key")), readFileSync(f("other-ca.pem"))),
    });
    expect((await stranger.call(adminMethods.listResources, listing, 3000)).ok).toBe(false);
    stranger.close();
    const admin = createAdminClient({ url: `https://${at}`, caFile: f("ca.pem"), certFile: f("client.pem"), keyFile: f("client.key") });
    expect(await admin.listResources()).toEqual([]);
    admin.close();
  } finally {
    await server.stop();
  }
});

test("TLS flags are checked at start", async () => {
  await expect(startServerProcess({ args: ["--tls-cert", f("server.pem")] })).rejects.toThrow(/exited with 2/);
  await expect(startServerProcess({ args: ["--tls-cert", f("nope.pem"), "--tls-key", f("server.key")] })).rejects.toThrow(/exited with 1/);
});
