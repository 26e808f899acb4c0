"""The offline demo: a small pool of models the project pre-trained itself, and its runner."""
