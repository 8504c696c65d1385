"""Knowledge distillation (kd, at, fsp, sp, nst, adversarial) under the contract: the student
is a copy of the model, trained against `context.teacher` or `config.teacher` (a model file)."""

from __future__ import annotations

from slimkit.compress.contract import Report, Result, register
from slimkit.distill.trainer import DistillConfig, distill
from slimkit.errors import UserError


def _teacher(cfg, ctx):
    if cfg.teacher:
        from slimkit.train import load_model

        return load_model(cfg.teacher)
    if ctx.teacher is None:
        raise UserError("distill needs a teacher: context teacher=<model> or "
                        "config teacher=<model file>")
    return ctx.teacher


@register("distill", "distill", DistillConfig, needs=("train", "teacher"),
          accepts=("float", "lowbit"))
def _distill(model, cfg, ctx):
    teacher = _teacher(cfg, ctx)
    student = ctx.keep_masks(model)          # pruned zeros stay zero while training
    hist = distill(student, teacher, ctx.need_train("distill"), cfg, epochs=cfg.epochs,
                   lr=cfg.lr, progress=False, **ctx.fit_kwargs)
    summary = {"losses": list(cfg.losses), "epochs": cfg.epochs,
               "train_loss": [round(v, 4) for v in hist.train_loss],
               "train_acc": [round(v, 4) for v in hist.train_acc]}
    return Result(student.eval(), Report("distill", summary))
