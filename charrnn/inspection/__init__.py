"""Looking inside a trained model: traces of its states (trace.py), the HTML report
(viz.py), loss curves (plot.py) and the web playground (serve.py, static/)."""
