"""What the tests share and are not tests themselves: builders (tiny networks, toy generators, hostile files),
runners (scripts in-process or as subprocesses, under a memory cap) and the check that runs the CUDA path's
gradients. Test modules import from here, never from one another (tests/test_conftest.py checks)."""
