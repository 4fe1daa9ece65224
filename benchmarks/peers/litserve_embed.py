"""Sentence embeddings on LitServe with its batching: POST /predict {"text": ...} -> [floats].

Run as ``python litserve_embed.py PORT [MAX_BATCH_SIZE] [BATCH_TIMEOUT_S]``."""

import sys

import litserve as ls
from _model import encode, load_model


class Embed(ls.LitAPI):
    def setup(self, device):
        self.model = load_model()

    def decode_request(self, request):
        return request["text"]

    def batch(self, inputs):
        return list(inputs)

    def predict(self, texts):
        return encode(self.model, texts)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return output.tolist()


if __name__ == "__main__":
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    api = Embed(max_batch_size=size, batch_timeout=timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(port=int(sys.argv[1]), generate_client_file=False)
