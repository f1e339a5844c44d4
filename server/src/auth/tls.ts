// Server credentials for the gRPC port: plaintext, TLS, or TLS that also
// requires client certificates signed by a given CA.
import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";

export interface TlsFiles {
  /** PEM certificate chain (--tls-cert). */
  certFile: string;
  /** PEM private key (--tls-key). */
  keyFile: string;
  /** PEM CA bundle; when set, clients must present a certificate it signed (--tls-client-ca). */
  clientCaFile?: string;
}

/** The PEM files' contents; an unreadable one fails naming its flag. */
export function readTlsFiles(tls: TlsFiles): { cert: Buffer; key: Buffer; ca: Buffer | undefined } {
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`${flag}: cannot read '${file}': ${(err as Error).message}`);
    }
  };
  return {
    cert: read("--tls-cert", tls.certFile),
    key: read("--tls-key", tls.keyFile),
    ca: tls.clientCaFile === undefined ? undefined : read("--tls-client-ca", tls.clientCaFile),
  };
}

export function serverCredentials(tls: TlsFiles | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const { cert, key, ca } = readTlsFiles(tls);
  return ServerCredentials.createSsl(ca ?? null, [{ cert_chain: cert, private_key: key }], ca !== undefined);
}
