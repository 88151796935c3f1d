"""Go1-class 12-DoF quadruped: model, joystick locomotion task, domain randomization."""
