"""`slimkit distill STUDENT --teacher TEACHER.pt --loss kd --epochs 1 --out FILE.pt`: train a
student against a teacher (flags generated from `DistillConfig`); without --teacher the
student's own starting weights teach it (self-distillation)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from slimkit.compress.command import add_method_command
    from slimkit.distill import DistillConfig

    add_method_command(subparsers, "distill", DistillConfig,
                       help="knowledge distillation (kd, at, fsp, sp, nst, adversarial)",
                       description="Train a student model against a teacher model file "
                                   "(Hinton 2015 and the feature losses of the survey).")


def run(args: argparse.Namespace) -> int:
    from slimkit.compress.command import run_method_command
    from slimkit.distill import DistillConfig

    return run_method_command(args, DistillConfig)
