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

export function serverCredentials(tls: TlsFiles | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`${flag}: cannot read '${file}': ${(err as Error).message}`);
    }
  };
  const cert = read("--tls-cert", tls.certFile);
  const key = read("--tls-key", tls.keyFile);
  const ca = tls.clientCaFile === undefined ? null : read("--tls-client-ca", tls.clientCaFile);
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null);
}
