"""The custom model of AIFlow's README ("add your own model"), as its users write it: a plain
function with AIFlow's signature, registered under its task type. taskgate hands it the
endpoint and key of the route's configured instance as ``model_spec``."""

from __future__ import annotations

from typing import Any

from taskgate import register_inference_function


@register_inference_function("my-custom-model")
def my_custom_model_inference(
    model_spec: dict[str, Any], payload: dict[str, Any], inference_params: dict[str, Any]
) -> Any:
    return {
        "output": f"{model_spec['name']} at {model_spec['endpoint']}: {payload['input_text']}",
        "metadata": {"param1": inference_params.get("param1")},
    }
