# The CUDA kernels on the CPU (tests/emu/README.md): tests/gpu/test_cuda_ops.c, unchanged but for
# where its backend comes from, run against the "cuda-emu" backend, whose ops are cuda/kernels_*.cu
# rewritten by prep.py and executed by emu_runtime.cpp (one fiber per CUDA thread). Built with or
# without CUDA, so every CI run checks every kernel's logic against the ref oracle; not under the
# sanitizers, whose stack tracking does not follow fiber switches.
#   emu.test_cuda_ops   every CUDA kernel vs the ref backend, fp32 and bf16 (gemm is ref's)
if(NOT TULPAR_SANITIZE)
    enable_language(CXX)
    if(NOT TULPAR_PYTHON)
        find_program(TULPAR_PYTHON NAMES python3 REQUIRED)
    endif()
    set(emu_gen ${CMAKE_CURRENT_BINARY_DIR}/emu)
    set(emu_sources)
    foreach(src kernels_basic.cu kernels_conv.cu kernels_transformer.cu cuda_ops.h cuda_common.h)
        string(REGEX REPLACE "\\.cu$" ".cpp" out ${src})
        add_custom_command(
            OUTPUT ${emu_gen}/${out}
            COMMAND ${CMAKE_COMMAND} -E make_directory ${emu_gen}
            COMMAND ${TULPAR_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/prep.py
                    ${PROJECT_SOURCE_DIR}/cuda/${src} ${emu_gen}/${out}
            DEPENDS ${PROJECT_SOURCE_DIR}/cuda/${src} ${CMAKE_CURRENT_LIST_DIR}/prep.py
            COMMENT "CUDA emulation: ${src}")
        list(APPEND emu_sources ${emu_gen}/${out})
    endforeach()
    add_executable(test_cuda_ops_emu ${CMAKE_CURRENT_LIST_DIR}/../gpu/test_cuda_ops.c
        ${CMAKE_CURRENT_LIST_DIR}/backend_emu.cpp ${CMAKE_CURRENT_LIST_DIR}/emu_runtime.cpp
        ${emu_sources})
    set_target_properties(test_cuda_ops_emu PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
    target_compile_definitions(test_cuda_ops_emu PRIVATE TP_CUDA_OPS_EMULATED)
    # The rewritten headers and the emulated CUDA runtime come before cuda/ and the real one.
    target_include_directories(test_cuda_ops_emu BEFORE PRIVATE ${emu_gen}
        ${CMAKE_CURRENT_LIST_DIR}/include ${CMAKE_CURRENT_LIST_DIR}/../unit)
    target_compile_options(test_cuda_ops_emu PRIVATE ${TULPAR_WARN} -Wno-unused-function)
    target_link_libraries(test_cuda_ops_emu PRIVATE tulpar_rt)
    add_test(NAME emu.test_cuda_ops COMMAND test_cuda_ops_emu)
    set_tests_properties(emu.test_cuda_ops PROPERTIES LABELS "cpu;emu" TIMEOUT 1200)
endif()
