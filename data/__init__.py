"""Download (``download_data.py``) and load (``load_data.py``) MNIST and CIFAR-10."""
