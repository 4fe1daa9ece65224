"""JSON echo on BentoML: POST /echo {"text": ...} -> {"text": ...}.

Run as ``python bentoml_echo.py PORT`` (it starts ``bentoml serve`` on itself)."""

import os
import subprocess
import sys

import bentoml


@bentoml.service(workers=1)
class Echo:
    @bentoml.api
    def echo(self, text: str) -> dict:
        return {"text": text}


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(subprocess.call([sys.executable, "-m", "bentoml", "serve", "bentoml_echo:Echo",
                              "--port", sys.argv[1], "--host", "127.0.0.1"], cwd=here))
