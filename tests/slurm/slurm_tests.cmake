# Tests against a real one-node Slurm that the test starts and stops itself (label slurm).
# Skipped (exit 77, with the reason) where Slurm cannot be started; tools/deps.sh installs it.
add_test(NAME test_slurm
    COMMAND ${TULPAR_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm.py
            --tulpar $<TARGET_FILE:tulpar> --source ${PROJECT_SOURCE_DIR})
set_tests_properties(test_slurm PROPERTIES LABELS "cpu;mpi;slurm" TIMEOUT 1800 SKIP_RETURN_CODE 77
    RUN_SERIAL TRUE
    ENVIRONMENT "PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/cli;PYTHONDONTWRITEBYTECODE=1")
