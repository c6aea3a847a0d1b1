# GPU tests (label gpu): built only with CUDA; each returns 77 (reported as skipped) where no GPU
# is visible. Multi-GPU runs of the same binaries: mpirun -np N, one GPU per rank.
#   gpu.test_comm_nccl   the NCCL communicator against host-computed expectations
#   gpu.test_cuda_ops    every op of the cuda backend against the ref oracle, fp32 and bf16
#   gpu.test_cuda_train  50 GPT steps cuda vs cpu, checkpoints across backends, generate
if(TULPAR_HAVE_CUDA)
    add_executable(test_comm_nccl ${CMAKE_CURRENT_LIST_DIR}/test_comm_nccl.c)
    add_executable(test_cuda_ops ${TP_CUDA_OPS_TEST_SOURCES})
    target_compile_definitions(test_cuda_ops PRIVATE TP_TEST_SHARED_STATE)
    foreach(name test_comm_nccl test_cuda_ops)
        target_compile_options(${name} PRIVATE ${TULPAR_WARN} -Wno-unused-function)
        target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
        target_link_libraries(${name} PRIVATE tulpar_rt CUDA::cudart)
        add_test(NAME gpu.${name} COMMAND ${name})
        set_tests_properties(gpu.${name} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 600)
    endforeach()

    # Command-line test in Python, as tests/cli/cli_tests.cmake runs them.
    if(NOT TULPAR_PYTHON)
        find_program(TULPAR_PYTHON NAMES python3 REQUIRED)
    endif()
    add_test(NAME gpu.test_cuda_train
        COMMAND ${TULPAR_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/test_cuda_train.py
                --tulpar $<TARGET_FILE:tulpar> --source ${PROJECT_SOURCE_DIR})
    set_tests_properties(gpu.test_cuda_train PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
        TIMEOUT 900
        ENVIRONMENT "PYTHONPATH=${CMAKE_CURRENT_LIST_DIR}/../cli;PYTHONDONTWRITEBYTECODE=1")
endif()
