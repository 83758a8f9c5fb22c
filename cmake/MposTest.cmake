# mpos_unit_test(NAME LABEL <label> SOURCES <files...> LIBS <libs...>)
# A cmocka test. Every test carries one component label (crypto, hsm, terminal, e2e, attacks,
# faults, store, ops) so that `ctest -L crypto` runs one part of the system.
function(mpos_unit_test name)
    cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
    if(NOT T_LABEL)
        message(FATAL_ERROR "test ${name} has no LABEL")
    endif()
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} mpos_testutil PkgConfig::CMOCKA)
    add_test(NAME ${name} COMMAND ${name})
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 300)
    endif()
    set_tests_properties(${name} PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
        ENVIRONMENT "MPOS_PUBLISHED_VECTORS=${MPOS_PUBLISHED_VECTORS};MPOS_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
