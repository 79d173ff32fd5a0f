"""The CIFAR-10 CNN study in the Flax-examples shape: ``config``, ``input_pipeline``, ``train``.

``experiments/cifar10_cnn.py`` is its thin main (command line -> :class:`config.Config` ->
:func:`train.train_and_evaluate`).
"""
