"""The engines that run a model: PyTorch (model.py, torch_engine.py) and the
protocol both it and the NumPy reference engine (charrnn.reference) implement."""
