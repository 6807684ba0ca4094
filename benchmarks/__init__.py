"""Speed and size of the models: the step benchmark, parameter counts, the GPU check and the
side-by-side with the study's PyTorch code. Not installed with the package."""
