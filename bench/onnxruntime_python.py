"""Python ONNX Runtime latency for a SlowFast ONNX model (CPU, batch 1 or --batch).

The reference point for `slowfast bench`, which runs it on the same file in
the same run:

    ~/.cache/slowfast/pyref/bin/python bench/onnxruntime_python.py --model m.onnx --threads 2

Session settings match the runtime's CPU engine: ORT_ENABLE_ALL,
`intra_op_num_threads` = --threads, CPU provider only. Inputs, timing and
the JSON line it prints: onnx_reference.py.
"""

import onnxruntime as ort

from onnx_reference import arguments, input_shapes, random_inputs, time_and_report


def main():
    args = arguments(__doc__.splitlines()[0])
    feeds = random_inputs(input_shapes(args.model, args.batch))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    time_and_report(lambda: sess.run(None, feeds), f"Python onnxruntime {ort.__version__}", args)


if __name__ == "__main__":
    main()
