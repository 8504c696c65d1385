import io

import numpy as np
import pytest
import torch

from slimkit.graph import DependencyGraph, shrink

from ._models import InvertedResidual, ResProj, randomize_bn

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("make, shape", [(ResProj, (3, 8, 8)), (InvertedResidual, (3, 6, 6))])
def test_shrunk_model_exports_to_onnx(make, shape):
    model = randomize_bn(make()).eval()
    x = torch.randn(2, *shape)
    graph = DependencyGraph.build(model, x)
    keep = {g.id: torch.arange(0, g.size, 2) for g in graph.prunable_groups}
    small = shrink(model, graph, keep).eval()
    buf = io.BytesIO()
    torch.onnx.export(small, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref = small(x).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
