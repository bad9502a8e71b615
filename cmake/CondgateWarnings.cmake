# cg_set_warnings(target): the project's warning flags and sanitizers.
function(cg_set_warnings target)
  if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE
      -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes
      -Wmissing-prototypes -Wformat=2 -Wvla -Wno-unused-parameter)
    if(CG_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
    if(CG_SANITIZE)
      target_compile_options(${target} PRIVATE -fsanitize=${CG_SANITIZE} -fno-omit-frame-pointer
                                               -fno-sanitize-recover=all)
      target_link_options(${target} PRIVATE -fsanitize=${CG_SANITIZE})
    endif()
  endif()
endfunction()
