# The simulator's PC/SC path (included by terminal/sim/CMakeLists.txt): the card reader over
# pcsc-lite (mpos_pcsc_reader), the vpcd transport of the virtual card and mpos-cardsim, and
# the tests through a real pcscd (tests/pcsc). Targets of terminal/sim/cardsim are linked by
# name: that folder is added after this one (terminal/CMakeLists.txt).

# cards.tsv beside the repository, else the copy in it (the same rule as the tests' harness).
if(EXISTS ${CMAKE_SOURCE_DIR}/../shared/testdata/cards.tsv)
    get_filename_component(MPOS_CARDS_TSV ${CMAKE_SOURCE_DIR}/../shared/testdata/cards.tsv ABSOLUTE)
else()
    set(MPOS_CARDS_TSV ${CMAKE_SOURCE_DIR}/tests/data/cards.tsv)
endif()

# The virtual card over vsmartcard's vpcd protocol (cardsim/vpcd.h) and mpos-cardsim.
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/cardsim/card.h)
    add_library(mpos_vpcd STATIC ${CMAKE_CURRENT_LIST_DIR}/cardsim/vpcd.c)
    target_include_directories(mpos_vpcd PUBLIC ${CMAKE_CURRENT_LIST_DIR}/cardsim)
    target_link_libraries(mpos_vpcd PUBLIC mpos_cardsim_engine mpos_hal mpos_util)
    add_executable(mpos-cardsim ${CMAKE_CURRENT_LIST_DIR}/cardsim/cardsim_main.c)
    target_compile_definitions(mpos-cardsim PRIVATE MPOS_CARDS_DEFAULT="${MPOS_CARDS_TSV}")
    target_link_libraries(mpos-cardsim PRIVATE mpos_vpcd)
endif()

# The card reader through PC/SC: what the simulator's card-reader HAL wraps (hal.h shapes).
pkg_check_modules(PCSCLITE IMPORTED_TARGET libpcsclite)
if(PCSCLITE_FOUND)
    add_library(mpos_pcsc_reader STATIC ${CMAKE_CURRENT_LIST_DIR}/pcsc_reader.c)
    target_include_directories(mpos_pcsc_reader PUBLIC ${CMAKE_CURRENT_LIST_DIR})
    target_link_libraries(mpos_pcsc_reader PUBLIC PkgConfig::PCSCLITE mpos_hal mpos_util)
else()
    message(STATUS "libpcsclite not found: no PC/SC card reader (scripts/install-deps)")
endif()

add_subdirectory(${CMAKE_CURRENT_LIST_DIR}/tests/pcsc ${CMAKE_CURRENT_BINARY_DIR}/tests/pcsc)
