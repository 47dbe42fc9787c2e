"""The teachers: their ONNX files made from pip packages (``build``), the dlib ResNet port (``dlib_resnet``) and
its crop template (``dlib_template``), their servable manifest (``manifest``) and their outputs on LFW
(``embedding``)."""
