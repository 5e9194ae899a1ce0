"""MNIST and CIFAR-10: where they lie (``layout.py``), how they are fetched (``fetch.py``,
``download_data.py``) and read (``load_data.py``). See docs/data.md."""
