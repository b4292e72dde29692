"""Guest workloads: synthetic generators and trace readers, one record stream."""
