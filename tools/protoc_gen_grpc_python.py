"""buf plugin shim: runs grpcio-tools' built-in grpc_python generator in-process.

grpcio-tools ships no `protoc-gen-grpc_python` executable (the generator is compiled into
`grpc_tools._protoc_compiler`), so buf cannot call it as a builtin. This shim reads buf's
CodeGeneratorRequest, hands the descriptors to `grpc_tools.protoc`, and answers with the files.
"""

import os
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        fds = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        set_path = os.path.join(tmp, "in.binpb")
        with open(set_path, "wb") as fh:
            fh.write(fds.SerializeToString())
        out_dir = os.path.join(tmp, "out")
        os.mkdir(out_dir)
        param = f"{request.parameter}:" if request.parameter else ""
        rc = protoc.main(
            [
                "protoc",
                f"--descriptor_set_in={set_path}",
                f"--grpc_python_out={param}{out_dir}",
                *request.file_to_generate,
            ]
        )
        if rc != 0:
            response.error = f"grpc_tools.protoc exited with {rc}"
        else:
            for root, _dirs, files in os.walk(out_dir):
                for name in sorted(files):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as fh:
                        response.file.add(
                            name=os.path.relpath(path, out_dir), content=fh.read()
                        )
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
