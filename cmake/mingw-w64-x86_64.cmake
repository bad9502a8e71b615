# Toolchain: 64-bit Windows with mingw-w64 (Debian: apt-get install mingw-w64).
#
# Libraries come from CG_WIN_DEPS (default build/win-deps/x86_64 in the
# source tree), filled by cmake/win-deps.sh; they are static, so the .exe
# files need no DLL beyond Windows' own. When wine64 is installed, test
# programs run under it (CMAKE_CROSSCOMPILING_EMULATOR), with a Wine prefix
# kept in the build tree.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(_cg_host x86_64-w64-mingw32)

set(CMAKE_C_COMPILER ${_cg_host}-gcc)
set(CMAKE_CXX_COMPILER ${_cg_host}-g++)
set(CMAKE_RC_COMPILER ${_cg_host}-windres)
set(CMAKE_AR ${_cg_host}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${_cg_host}-ranlib CACHE FILEPATH "")

if(NOT CG_WIN_DEPS)
  get_filename_component(_cg_src "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
  set(CG_WIN_DEPS "${_cg_src}/build/win-deps/x86_64")
endif()
set(CG_WIN_DEPS "${CG_WIN_DEPS}" CACHE PATH "Prefix of the cross-built libraries (cmake/win-deps.sh)")

set(CMAKE_FIND_ROOT_PATH /usr/${_cg_host} "${CG_WIN_DEPS}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config sees only the Windows prefix, and static link lines.
set(ENV{PKG_CONFIG_LIBDIR} "${CG_WIN_DEPS}/lib/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
set(PKG_CONFIG_ARGN --static CACHE STRING "")

# No libgcc DLL at run time.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc -static")

# Test programs run under Wine: cmake/wine-run.sh, with WINEPREFIX in the
# build tree (Wine writes it on first start). CG_NO_EMULATOR is set by
# win-deps.sh, whose builds run nothing.
if(NOT CG_NO_EMULATOR AND NOT CMAKE_CROSSCOMPILING_EMULATOR)
  find_program(CG_WINE64 NAMES wine64 PATHS /usr/lib/wine /usr/lib64/wine NO_CMAKE_FIND_ROOT_PATH)
  if(CG_WINE64)
    set(CMAKE_CROSSCOMPILING_EMULATOR
        "${CMAKE_CURRENT_LIST_DIR}/wine-run.sh;--prefix;${CMAKE_BINARY_DIR}/wineprefix")
  endif()
endif()
