"""Knowledge distillation (003) and head network distillation with a bottleneck (002) on offline data.

data.py (digits / ImageFolder tensors), nets.py (VGG, ResNet-18, tiny ViTs), kd.py (Hinton KD loss and
training), hnd.py (002 eq. (1) and bottlenecked student heads), studies.py (003 Tables I-III), runs.py (runs
that write files and device profiles), models.py (registered resnet18-digits and resnet18-mimic-digits),
cli.py (`edgesim distill kd | head | sweep | profile`).
"""
