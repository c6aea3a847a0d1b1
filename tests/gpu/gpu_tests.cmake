# GPU tests (label gpu): built only with CUDA; each returns 77 (reported as skipped) where no GPU
# is visible. Multi-GPU runs of the same binaries: mpirun -np N, one GPU per rank.
if(TULPAR_HAVE_CUDA)
    add_executable(test_comm_nccl ${CMAKE_CURRENT_LIST_DIR}/test_comm_nccl.c)
    target_compile_options(test_comm_nccl PRIVATE ${TULPAR_WARN} -Wno-unused-function)
    target_include_directories(test_comm_nccl PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
    target_link_libraries(test_comm_nccl PRIVATE tulpar_rt CUDA::cudart)
    add_test(NAME gpu.test_comm_nccl COMMAND test_comm_nccl)
    set_tests_properties(gpu.test_comm_nccl PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
