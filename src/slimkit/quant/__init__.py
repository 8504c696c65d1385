"""slimkit.quant: uniform quantization, calibration, post-training quantization, DFQ.

Contract (used by the training-based and deployment modules of this package):

    from slimkit.quant.api import QUANTIZERS, calib_batches, quantize, register_quantizer
from slimkit.quant.core import QScheme, qparams_from_range, quantize, dequantize, fake_quantize, sqnr
    from slimkit.quant.observers import OBSERVERS     # minmax, ema_minmax, percentile, mse, kl, aciq
    from slimkit.quant.modules import QuantConv2d, QuantLinear
    from slimkit.quant.fold import fold_bn
    model.qspec  # {layer_fqn: {weight_bits, act_bits, scheme, weight_scale, weight_zp, act_scale, act_zp}}

One entry point, `quantize(model, config, calib=...)`, dispatches on the config's class via
the `QUANTIZERS` registry (see `slimkit.quant.api` for how a method registers its config):

    int8 = quantize(model, PTQConfig(weight_bits=8, act_bits=8, observer="kl"), calib=loader)
    w4 = quantize(model, PRESETS.get("banner_w4a8")(), calib=loader)
    mixed = quantize(model, MixedConfig(budget_bits=5), calib=loader)

`slimkit.quant.diagnostics` shows which layer breaks accuracy; `slimkit.quant.qfile` saves
and loads quantized models (safetensors); `slimkit.quant.demo.demo_rows` builds demo rows.
`quantize_tensor` is `slimkit.quant.core.quantize` (renamed here to keep `quantize` for models).
"""

from slimkit.quant.api import QUANTIZERS, calib_batches, quantize, register_quantizer
from slimkit.quant.core import (
    QScheme,
    dequantize,
    fake_quantize,
    qparams_from_range,
    qspec_from_json,
    qspec_to_json,
    quantize as quantize_tensor,
    sqnr,
)
from slimkit.quant.fold import fold_bn
from slimkit.quant.modules import QuantConv2d, QuantLinear
from slimkit.quant.observers import OBSERVERS
from slimkit.quant.ptq import PRESETS, PTQConfig, quantize_ptq  # registers PTQConfig
from slimkit.quant.mixed import MixedConfig, assign_bits, quantize_mixed  # registers MixedConfig
from slimkit.quant.dfq import equalize_, replace_relu6
from slimkit.quant.diagnostics import layer_sensitivity, layer_sqnr

# training-based methods and weight sharing
from slimkit.quant.binary import prepare_binary
from slimkit.quant.hashed import HashedConv2d, HashedLinear, hash_compress
from slimkit.quant.inq import INQ, INQConfig, prepare_inq
from slimkit.quant.pact import PACT, PACTRegularizer, prepare_pact
from slimkit.quant.qat import QATConfig, prepare_qat
from slimkit.quant.qat import convert as convert_qat
from slimkit.quant.sharing import ShareConfig, kmeans_share

__all__ = [
    "prepare_binary", "HashedConv2d", "HashedLinear", "hash_compress", "INQ", "INQConfig",
    "prepare_inq", "PACT", "PACTRegularizer", "prepare_pact", "QATConfig", "prepare_qat",
    "convert_qat", "ShareConfig", "kmeans_share",
    "QScheme",
    "qparams_from_range",
    "quantize_tensor",
    "dequantize",
    "fake_quantize",
    "sqnr",
    "qspec_to_json",
    "qspec_from_json",
    "OBSERVERS",
    "QuantConv2d",
    "QuantLinear",
    "fold_bn",
    "QUANTIZERS",
    "register_quantizer",
    "quantize",
    "calib_batches",
    "PTQConfig",
    "PRESETS",
    "quantize_ptq",
    "MixedConfig",
    "assign_bits",
    "quantize_mixed",
    "equalize_",
    "replace_relu6",
    "layer_sqnr",
    "layer_sensitivity",
]
