"""Python OpenVINO latency for a SlowFast ONNX model (CPU plugin).

The reference for `slowfast bench --backends openvino`: the same library
our OpenVINO backend loads, from its own Python package, on the same file:

    ~/.cache/slowfast/pyref/bin/python bench/openvino_python.py --model m.onnx --threads 2 --batch 1

Settings match the runtime's OpenVINO engine: the model read from the ONNX
file, reshaped to a static [batch, 3, T, S, S] per pathway, compiled for the
CPU with INFERENCE_NUM_THREADS = --threads, PERFORMANCE_HINT LATENCY and
INFERENCE_PRECISION_HINT f32. Inputs, timing and the JSON line it prints:
onnx_reference.py.
"""

import openvino as ov

from onnx_reference import arguments, input_shapes, random_inputs, time_and_report


def main():
    args = arguments(__doc__.splitlines()[0])
    shapes = input_shapes(args.model, args.batch)
    feeds = random_inputs(shapes)
    core = ov.Core()
    model = core.read_model(args.model)
    model.reshape(shapes)
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": args.threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    })
    request = compiled.create_infer_request()
    time_and_report(lambda: request.infer(feeds), f"Python OpenVINO {ov.get_version().split('-')[0]}", args)


if __name__ == "__main__":
    main()
