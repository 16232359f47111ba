"""A SavedModel tfbake did not make, served and inspected like one of its own.

Saves a small ``tf.Module`` (int32, bool and string inputs; no raw feature contract, no
warm-up file) as ``<out>/1``, serves it with ``tfbake serve`` (a real server process),
prints what ``tfbake inspect`` shows for it (signatures and ready-to-run requests built
from the tensor signatures) and runs the printed curl request against the server.
The web console builds its form from the same signatures.
"""

import argparse
import os
import signal
import subprocess
import sys

import tensorflow as tf

from tfbake import inspection
from tfbake.model_server import listening_address

MODEL = "any_model"


class Rooms(tf.Module):
    """rooms (int32) and has_garden (bool) per listing, city as text: a score."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None], tf.bool),
                                  tf.TensorSpec([None], tf.string)])
    def score(self, rooms, has_garden, city):
        garden = tf.where(has_garden, 10, 0)
        return {"score": rooms * 20 + garden + tf.strings.length(city)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="artifacts/any_model")
    args = parser.parse_args()
    module = Rooms()
    tf.saved_model.save(module, os.path.join(args.out, "1"),
                        signatures={"serving_default": module.score})
    server = subprocess.Popen(
        [sys.executable, "-m", "tfbake.model_server", f"--model_name={MODEL}",
         f"--model_base_path={os.path.abspath(args.out)}", "--port=0", "--rest_api_port=-1"],
        stdout=subprocess.PIPE, text=True)
    try:
        addresses = {}
        for line in server.stdout:
            kind, address = listening_address(line) or (None, None)
            if kind:
                addresses[kind] = address
            if len(addresses) == 2:
                break
        description = inspection.inspect(os.path.join(args.out, "1"), model_name=MODEL,
                                      rest_url=addresses["rest"],
                                      grpc_target=addresses["grpc"])
        print(inspection.format_text(description))
        curl = next(s for s in description.samples if s.client == "curl")
        print("\n$ (the curl request above)")
        subprocess.run(["bash", "-c", curl.text], check=True)
        print("\n\nThe web console builds its form from the same signatures: "
              f"tfbake serve --model_name={MODEL} "
              f"--model_base_path={os.path.abspath(args.out)} --rest_api_port=8501, "
              "then open http://127.0.0.1:8501/")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
