// gRPC server reflection, so `grpcurl -plaintext host:7070 list` and
// `describe` work without the .proto files. The descriptors come from the
// generated protobuf-es code, the same ones the services are built from.
import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { file_google_protobuf_duration, file_google_protobuf_timestamp, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { Server } from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { file_ratequeue_v1_admin, file_ratequeue_v1_ratequeue } from "@ratequeue/proto";

const files: DescFile[] = [file_google_protobuf_duration, file_google_protobuf_timestamp, file_ratequeue_v1_ratequeue, file_ratequeue_v1_admin];

/** Serves the reflection service (v1 and v1alpha) for ratequeue.v1's services on `server`. */
export function addReflection(server: Server): void {
  const fileDescriptorProtos = files.map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  // @grpc/reflection reads the descriptors of a proto-loader package definition; these are the same bytes.
  new ReflectionService({ "ratequeue.v1": { fileDescriptorProtos } } as never).addToServer(server);
}
