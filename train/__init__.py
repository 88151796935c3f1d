"""SAC training, evaluation and ONNX export; also home of the `sim2real` command line."""
