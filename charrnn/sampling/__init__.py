"""Sampling: the rules and the generate loop (generate.py), and the steppers that
compute the next logits fast (numpy_stepper.py on CPU, cudagraph.py on CUDA)."""
