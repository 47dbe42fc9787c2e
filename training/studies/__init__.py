"""One-off studies that train or score several models side by side and write a table: the neuron-selection
ablation and the learning curve (``ablation``, specs in ``training/configs/studies/``), accuracy by head pose
(``pose``)."""
