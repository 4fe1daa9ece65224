"""JSON echo on LitServe: POST /predict {"text": ...} -> {"text": ...}."""

import sys

import litserve as ls


class Echo(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["text"]

    def predict(self, x):
        return x

    def encode_response(self, output):
        return {"text": output}


if __name__ == "__main__":
    server = ls.LitServer(Echo(), accelerator="cpu", workers_per_device=1)
    server.run(port=int(sys.argv[1]), generate_client_file=False)
