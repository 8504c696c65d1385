"""Full mutation fuzz of every compact file format (Deep Compression packed / Huffman, sparse
CSR, quantized safetensors, model files, checkpoints): >= 10,000 seeded mutations each.

Outcomes per `slimkit._fuzz`: a slimkit error, a no-op load identical to the original, or a
re-signed valid edit accepted; never a non-library exception nor a silent load of corrupted
data. Writes benchmarks/results/fuzz_formats.md.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fuzz_formats.py [--n 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from slimkit._fuzz import FORMATS, KINDS, OUTCOMES, fuzz_format
from _host import cpu_line  # same folder

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="mutations per format")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", nargs="*", default=sorted(FORMATS), choices=sorted(FORMATS))
    ap.add_argument("--out", default=str(ROOT / "results" / "fuzz_formats.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.formats:
            c = fuzz_format(FORMATS[name], args.n, args.seed, Path(tmp) / name)
            results.append(c)
            print(f"{name}: {c.counts} in {c.seconds:.1f} s", flush=True)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    bad = sum(c.counts["raw"] + c.counts["silent"] for c in results)

    cmd = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fuzz_formats.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    lines = [
        "# Fuzzing the compact file formats",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"CPU: {cpu_line()}; torch {torch.__version__}, 1 thread. Load: before `{load_before}`; "
        f"after `{load_after}` (2 cores shared with other jobs, so times are wall-clock "
        "under that load).",
        "",
        f"{args.n:,} seeded mutations per format (seed {args.seed}), cycling through "
        f"{len(KINDS)} kinds: {', '.join(KINDS)}. Bit flips, insertions and deletions hit the "
        "header / pickle record 60% / 50% of the time and anywhere otherwise; header edits "
        "rewrite the safetensors header JSON (shapes, offsets, dtypes, dropped or renamed or "
        "extra entries, swapped data offsets) or overwrite bytes of a torch file's pickle "
        "record; metadata edits change, drop or add a JSON field (half of them re-signed with "
        "a valid checksum); swaps exchange two tensors' bytes; re-signed edits change a "
        "tensor's dtype, shape, length or values (NaN/inf, out-of-range indices) and recompute "
        "the checksum, so the field checks behind it are reached.",
        "",
        "Outcomes: **error** = slimkit's own error (`UserError`/`FormatError`) naming the file; "
        "**unchecked** = a slimkit error from a loader's last-resort guard (no named check "
        "caught it first); **identical** = loaded and equal to the original (a no-op mutation, "
        "e.g. a rewritten header with the same content, or two equal tensors swapped); "
        "**accepted** = a re-signed edit that is a valid file and loads as such; **raw** = any "
        "other exception escaping the loader (must be 0); **silent** = corrupted data loaded "
        "without an error (must be 0).",
        "",
        "| format | mutations | error | unchecked | identical | accepted | raw (must be 0) "
        "| silent (must be 0) | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results:
        k = c.counts
        lines.append(f"| {c.name} | {c.n:,} | {k['error']:,} | {k['unchecked']:,} | "
                     f"{k['identical']:,} | {k['accepted']:,} | {k['raw']:,} | "
                     f"{k['silent']:,} | {c.seconds:.1f} |")
    lines += ["", "Per mutation kind (all formats together):", "",
              "| kind | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|"]
    for kind in KINDS:
        row = {o: sum(c.by_kind.get(kind, {}).get(o, 0) for c in results) for o in OUTCOMES}
        lines.append(f"| {kind} | " + " | ".join(f"{row[o]:,}" for o in OUTCOMES) + " |")
    examples = [e for c in results for e in c.examples]
    lines += ["", f"Result: {'PASS' if bad == 0 else 'FAIL'} ({bad} raw or silent outcomes)."]
    if examples:
        lines += ["", "Examples of raw / silent / unchecked outcomes:", ""]
        lines += [f"- `{e}`" for e in examples]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
