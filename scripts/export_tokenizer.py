"""Export ``tokenizer.pt`` (the Stage I → Stage II handoff) from a Stage I Lightning checkpoint.

    python scripts/export_tokenizer.py ckpt=outputs/<run>/checkpoints/stage1/last.ckpt [out=tokenizer.pt] [ema=true]

Uses the EMA generator weights (as validation does) unless ``ema=false``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fsq_repro.artifacts import export_tokenizer_checkpoint, load_tokenizer
from fsq_repro.errors import ConfigError
from fsq_repro.pipeline.entry import one_line_errors


@one_line_errors
def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = set(args) - {"ckpt", "out", "ema"} or [a for a in argv if "=" not in a]
    if unknown or "ckpt" not in args:
        raise ConfigError(f"usage: export_tokenizer.py ckpt=PATH [out=PATH] [ema=true|false] (got {argv})")
    ckpt = Path(args["ckpt"])
    out = Path(args.get("out", ckpt.parent / "tokenizer.pt"))
    path = export_tokenizer_checkpoint(ckpt, out, use_ema=args.get("ema", "true").lower() != "false")
    tok = load_tokenizer(path)
    print(f"wrote {path}: codebook_size={tok.codebook_size} token_grid={tok.token_grid} resolution={tok.resolution}")


if __name__ == "__main__":
    main(sys.argv[1:])
