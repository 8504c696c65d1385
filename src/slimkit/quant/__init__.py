"""slimkit.quant: uniform quantization, calibration, post-training quantization, DFQ.

Contract (used by the training-based and deployment modules of this package):

    from slimkit.quant.core import QScheme, qparams_from_range, quantize, dequantize, fake_quantize, sqnr
    from slimkit.quant.observers import OBSERVERS     # minmax, ema_minmax, percentile, mse, kl, aciq
    from slimkit.quant.modules import QuantConv2d, QuantLinear
    from slimkit.quant.fold import fold_bn
    model.qspec  # {layer_fqn: {weight_bits, act_bits, scheme, weight_scale, weight_zp, act_scale, act_zp}}

One entry point, `quantize(model, config, calib=...)`, dispatches on the config's class via
the `QUANTIZERS` registry (see `slimkit.quant.api`).
"""

from slimkit.quant.core import (QScheme, dequantize, fake_quantize, qparams_from_range, qspec_from_json,
                                qspec_to_json, quantize as quantize_tensor, sqnr)
from slimkit.quant.fold import fold_bn
from slimkit.quant.modules import QuantConv2d, QuantLinear
from slimkit.quant.observers import OBSERVERS

__all__ = [
    "QScheme", "qparams_from_range", "quantize_tensor", "dequantize", "fake_quantize", "sqnr",
    "qspec_to_json", "qspec_from_json", "OBSERVERS", "QuantConv2d", "QuantLinear", "fold_bn",
]
