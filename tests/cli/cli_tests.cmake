# Command-line tests (Python 3 with Debian's numpy and h5py). Multi-rank ones run mpirun -np 2.
find_program(TULPAR_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT TULPAR_PYTHON)
    find_program(TULPAR_PYTHON NAMES python3 REQUIRED)
endif()
find_program(TULPAR_MPIRUN NAMES mpirun REQUIRED)

function(tulpar_cli_test name labels timeout)
    add_test(NAME ${name}
        COMMAND ${TULPAR_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/${name}.py
                --tulpar $<TARGET_FILE:tulpar> --source ${PROJECT_SOURCE_DIR})
    set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${timeout}
        ENVIRONMENT "PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/cli;PYTHONDONTWRITEBYTECODE=1")
endfunction()

tulpar_cli_test(test_cli "cpu" 120)
tulpar_cli_test(test_data_parallel "cpu;mpi" 600)
tulpar_cli_test(test_resume "cpu;mpi" 600)
tulpar_cli_test(test_bad_input "cpu;mpi" 900)
tulpar_cli_test(test_end_to_end "cpu;mpi" 900)
tulpar_cli_test(test_data_prepare "cpu" 120)
tulpar_cli_test(test_gpt "cpu;mpi" 900)
tulpar_cli_test(test_rank_failure "cpu;mpi" 300)
tulpar_cli_test(test_bench_coll "cpu;mpi" 300)
tulpar_cli_test(test_zero "cpu;mpi" 900)
tulpar_cli_test(test_stop_signal "cpu;mpi" 300)
tulpar_cli_test(test_bench_suite "cpu;mpi" 900)
