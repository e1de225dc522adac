"""File readers and writers: the only part of cohortnorm that touches paths."""
