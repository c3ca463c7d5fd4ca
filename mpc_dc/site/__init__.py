"""What a site is (campuses, their blocks, the inference fleet) and how a scenario names one."""
