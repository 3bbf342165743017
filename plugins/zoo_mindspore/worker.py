"""The script msrun starts in every worker: ``worker.py CONFIG.json [--stop-after N]``."""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_v", "3")
    os.environ["ZOO_MSRUN_WORKER"] = "1"  # this process is a worker: never launch msrun from here
    parser = argparse.ArgumentParser(description="codellama-zoo MindSpore training worker (started by msrun)")
    parser.add_argument("config")
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args(argv)

    from codellama_zoo.config import structure
    from codellama_zoo.training import TrainConfig
    from zoo_mindspore.training import train

    with open(args.config, encoding="utf-8") as handle:
        cfg = structure(json.load(handle), TrainConfig, source=args.config)
    train(cfg, stop_after=args.stop_after, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
