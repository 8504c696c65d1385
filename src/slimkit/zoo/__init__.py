"""slimkit.zoo: the survey's classic CNNs, built by name from a registry (as timm does).

>>> from slimkit import zoo
>>> zoo.names()[:3]
['alexnet', 'googlenet', 'lenet300']
>>> model = zoo.create("resnet20", num_classes=10, in_channels=1)   # e.g. for Fashion-MNIST
>>> zoo.input_shape("resnet20", in_channels=1)
(1, 32, 32)

All models are `torch.fx.symbolic_trace`-able, use one activation module per use, and pool
adaptively before their classifiers (except the LeNets), so CIFAR models also take 28x28.
New models join with `@register_model(name, input_shape=..., family=...)`.
"""

from slimkit.zoo import alexnet as _alexnet  # noqa: F401  (fills the registry)
from slimkit.zoo import googlenet as _googlenet  # noqa: F401
from slimkit.zoo import lenet as _lenet  # noqa: F401
from slimkit.zoo import mobilenet as _mobilenet  # noqa: F401
from slimkit.zoo import mobilenetv1 as _mobilenetv1  # noqa: F401
from slimkit.zoo import resnet as _resnet  # noqa: F401
from slimkit.zoo import shufflenet as _shufflenet  # noqa: F401
from slimkit.zoo import squeezenet as _squeezenet  # noqa: F401
from slimkit.zoo import vgg as _vgg  # noqa: F401
from slimkit.zoo._registry import MODELS, ModelEntry, create, input_shape, names, register_model

__all__ = ["MODELS", "ModelEntry", "create", "input_shape", "names", "register_model"]
