# The CUDA kernels on the CPU (tests/emu/README.md): tests/gpu's op test, unchanged but for
# where its backend comes from, run against the "cuda-emu" backend, whose ops are cuda/kernels_*.cu
# rewritten by prep.py and executed by emu_runtime.cpp (one fiber per CUDA thread). Built with or
# without CUDA, so every CI run checks every kernel's logic against the ref oracle; not under the
# sanitizers, whose stack tracking does not follow fiber switches.
#   emu.test_cuda_ops        every CUDA kernel vs the ref backend, fp32 and bf16 (gemm is ref's)
#   emu.test_gpt_reference   the GPT on those kernels vs PyTorch: logits, gradients, 5 AdamW steps
#   emu.test_model           MLP (with dropout) and CNN on those kernels vs ref: 3 AdamW steps
#   emu.test_gpt_generate    KV-cache decoding vs full forward, greedy and seeded sampling
#   emu.test_cuda_ops_lowest the op test with the lowest-numbered thread always run first
#   emu.test_cuda_ops_highest the shared-memory kernels' groups with the highest-numbered first
if(NOT TULPAR_SANITIZE)
    enable_language(CXX)
    if(NOT TULPAR_PYTHON)
        find_program(TULPAR_PYTHON NAMES python3 REQUIRED)
    endif()
    set(emu_gen ${CMAKE_CURRENT_BINARY_DIR}/emu)
    set(emu_sources)
    foreach(src kernels_basic.cu kernels_xent.cu kernels_conv.cu kernels_transformer.cu
            kernels_layernorm.cu kernels_attention_tc.cu cuda_ops.h cuda_common.h cuda_vec.h
            attention_impl.h kernel_grid.h)
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
    # The emulated CUDA backend, and the tests that run on it.
    add_library(tulpar_cuda_emu STATIC ${CMAKE_CURRENT_LIST_DIR}/backend_emu.cpp
        ${CMAKE_CURRENT_LIST_DIR}/emu_runtime.cpp ${emu_sources})
    set_target_properties(tulpar_cuda_emu PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
    # The rewritten headers and the emulated CUDA runtime come before cuda/ and the real one.
    target_include_directories(tulpar_cuda_emu BEFORE PUBLIC ${emu_gen}
        ${CMAKE_CURRENT_LIST_DIR}/include)
    # Kernels' "#pragma unroll" is nvcc's; the host compiler has its own spelling.
    target_compile_options(tulpar_cuda_emu PRIVATE ${TULPAR_WARN} -Wno-unknown-pragmas)
    target_link_libraries(tulpar_cuda_emu PUBLIC tulpar_rt)
    foreach(t gpu/test_cuda_ops unit/test_gpt_reference unit/test_model unit/test_gpt_generate)
        get_filename_component(name ${t} NAME)
        if(name STREQUAL "test_cuda_ops")
            add_executable(${name}_emu ${TP_CUDA_OPS_TEST_SOURCES})
            target_compile_definitions(${name}_emu PRIVATE TP_TEST_SHARED_STATE)
        else()
            add_executable(${name}_emu ${CMAKE_CURRENT_LIST_DIR}/../${t}.c)
        endif()
        # C++ objects inside: link with the C++ driver.
        set_target_properties(${name}_emu PROPERTIES LINKER_LANGUAGE CXX)
        target_compile_definitions(${name}_emu PRIVATE TP_CUDA_EMULATED
            TP_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
        target_include_directories(${name}_emu PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
        target_compile_options(${name}_emu PRIVATE ${TULPAR_WARN} -Wno-unused-function)
        target_link_libraries(${name}_emu PRIVATE tulpar_cuda_emu)
        add_test(NAME emu.${name} COMMAND ${name}_emu)
        set_tests_properties(emu.${name} PROPERTIES LABELS "cpu;emu" TIMEOUT 1200)
    endforeach()
    # The op test again with warp 0 run as far ahead as barriers allow (emu_runtime.cpp): a warp
    # overwriting shared memory that another has yet to read shows only in that order.
    add_test(NAME emu.test_cuda_ops_lowest COMMAND test_cuda_ops_emu)
    # cp.async copies land at issue there (the earliest a GPU may land them; round-robin above
    # lands them at the wait, the latest): a copy refilling a buffer another warp still reads
    # shows only so.
    set_tests_properties(emu.test_cuda_ops_lowest PROPERTIES LABELS "cpu;emu" TIMEOUT 1200
        ENVIRONMENT "TP_EMU_SCHED=lowest;TP_EMU_CP_ASYNC=early")
    # And with the last warp ahead, over the groups whose kernels pass data between warps through
    # shared memory (reductions, LayerNorm, cross-entropy, embedding, attention).
    add_test(NAME emu.test_cuda_ops_highest COMMAND test_cuda_ops_emu sumsq bias softmax_xent
        embedding layernorm attention)
    set_tests_properties(emu.test_cuda_ops_highest PROPERTIES LABELS "cpu;emu" TIMEOUT 1200
        ENVIRONMENT "TP_EMU_SCHED=highest;TP_EMU_CP_ASYNC=early")
endif()
