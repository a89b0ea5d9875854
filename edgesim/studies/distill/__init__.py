"""Knowledge distillation (003) and head network distillation with a bottleneck (002) on offline data.

data.py (digits / ImageFolder tensors), kd.py (Hinton KD loss and training), hnd.py (002 eq. (1)), studies.py
(003 Tables I-III), runs.py (runs that write files and device profiles). The nets and student heads are built in
profilers/models (nets.py, students.py); the command line is edgesim/cli/distill.py.
"""
