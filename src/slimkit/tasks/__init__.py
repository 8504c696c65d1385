"""slimkit.tasks: compression beyond classification -- object detection and semantic
segmentation on **synthetic** scenes of MNIST / Fashion-MNIST objects (no downloads).

- `scenes`: seeded canvases with 1-4 pasted objects; boxes, labels and per-pixel masks.
- `models`: `CenterNetLite` (anchor-free heatmap detector) and `UNetLite` (small U-Net), plain
  conv/BN/ReLU, fx-traceable, one output tensor.
- `losses`: focal + L1 + GIoU (detection), cross-entropy + Dice (segmentation), dense KD.
- `decode`: heatmap peaks -> boxes. `metrics`: mAP@0.5 (VOC all-point), mIoU.
- `train`: `train_task` (with optional teacher); `evaluate`: `evaluate_task`.
- `registry`: `TASKS` name -> `Task` (data set, model, loss, KD loss, metric).

>>> from slimkit.tasks import TASKS, SceneConfig, train_task, evaluate_task
>>> task = TASKS.get("segmentation")
>>> ds = task.dataset(SceneConfig(n=512))
>>> model = task.build_model(width=8)
>>> train_task(model, task.loader(ds, train=True), task, epochs=2)  # doctest: +SKIP
>>> evaluate_task(model, task.loader(task.dataset(SceneConfig(n=128, split="test"))), task)  # doctest: +SKIP
"""

from slimkit.tasks.decode import decode_detections
from slimkit.tasks.evaluate import evaluate_detection, evaluate_segmentation, evaluate_task
from slimkit.tasks.losses import detection_kd, detection_loss, segmentation_kd, segmentation_loss
from slimkit.tasks.metrics import average_precision, confusion_matrix, mean_average_precision, mean_iou
from slimkit.tasks.models import CenterNetLite, UNetLite
from slimkit.tasks.registry import TASKS, Task, get_task
from slimkit.tasks.scenes import SceneConfig, SceneDataset, collate_scenes
from slimkit.tasks.train import train_task

__all__ = [
    "TASKS", "Task", "get_task", "SceneConfig", "SceneDataset", "collate_scenes",
    "CenterNetLite", "UNetLite", "detection_loss", "segmentation_loss", "detection_kd",
    "segmentation_kd", "decode_detections", "average_precision", "mean_average_precision",
    "confusion_matrix", "mean_iou", "evaluate_task", "evaluate_detection",
    "evaluate_segmentation", "train_task",
]
