"""Training subproject: distil a compact face-embedding student from SFace + dlib ResNet neurons (MobileID)."""
