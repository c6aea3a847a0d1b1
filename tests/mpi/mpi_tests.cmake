# Multi-rank C tests of the communicator (tests/mpi/test_*.c), each launched by mpirun with 2
# ranks and with 3 (oversubscribed: uneven ring blocks), labels cpu and mpi.
find_program(TULPAR_MPIEXEC NAMES mpirun REQUIRED)
file(GLOB TULPAR_MPI_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_*.c)
foreach(src ${TULPAR_MPI_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE ${TULPAR_WARN})
    target_link_libraries(${name} PRIVATE tulpar_rt)
    foreach(np 2 3)
        add_test(NAME mpi.${name}.np${np}
            COMMAND ${TULPAR_MPIEXEC} -np ${np} --oversubscribe --bind-to none $<TARGET_FILE:${name}>)
        set_tests_properties(mpi.${name}.np${np} PROPERTIES LABELS "cpu;mpi" TIMEOUT 300
            ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_pml=ob1;OMPI_MCA_btl=self,vader;OMP_NUM_THREADS=1")
    endforeach()
endforeach()
