"""Training of the landmark network served by ``app``: prepare (detect and cache), train (Lightning),
evaluate (through ``app.inference.LandmarkPredictor``, against dlib's 68-point predictor) and ship.

Imports only ``app.inference`` from the service; nothing in ``app`` imports this package.
"""
