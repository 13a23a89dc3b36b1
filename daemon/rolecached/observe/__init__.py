"""What the daemon tells about itself: the audit of every hand-out, and its log output."""
