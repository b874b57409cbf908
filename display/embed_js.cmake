# Embeds one figure script: display/js/NAME.js -> a C source that defines
#   const char lp_js_NAME[]   (the script's text, NUL-terminated)
# as a char array initializer (no string-literal length limits, no escaping to get wrong),
# and the embedded text itself, which tests/js/ check as well as the source.
# Run by display/CMakeLists.txt at build time:
#   cmake -DSRC=NAME.js -DNAME=lp_js_NAME -DOUT_C=NAME_js.c -DOUT_JS=NAME.js -P embed_js.cmake
#
# The text is made smaller (figures are saved in notebooks, and notebooks are shared):
# comments, indentation and blank lines go, spaces that separate no words go (outside
# string literals), and a line is joined to the previous one where no semicolon can be
# inserted between them (the previous one ends with ; { , ( [ = : ? && ||, or this one
# starts with ) ] }). That is correct for the JavaScript the scripts keep to, which is
# checked here (the build fails otherwise):
#   - strings in '...' or "..." closed on their line; no template literals (backquotes);
#   - no regular expression literals (a "/" must be division; use new RegExp("..."));
#   - a block comment opens at the start of a line and closes at the end of a line.
# The text must not hold "</script" or "<!--": it is the content of an HTML <script>.
cmake_minimum_required(VERSION 3.20)

foreach(var IN ITEMS SRC NAME OUT_C OUT_JS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_js.cmake: -D${var}=... is missing")
  endif()
endforeach()

# Code outside strings (one line's piece, in variable seg): spaces kept only between two
# word characters, between + and + or - and -, and next to a "/".
macro(compact_code seg)
  string(REGEX REPLACE "[ \t]+" " " ${seg} "${${seg}}")
  string(REGEX REPLACE "([^A-Za-z0-9_$+/-]) " "\\1" ${seg} "${${seg}}")
  string(REGEX REPLACE " ([^A-Za-z0-9_$+/-])" "\\1" ${seg} "${${seg}}")
  string(REGEX REPLACE "([A-Za-z0-9_$]) ([+-])" "\\1\\2" ${seg} "${${seg}}")
  string(REGEX REPLACE "([+-]) ([A-Za-z0-9_$])" "\\1\\2" ${seg} "${${seg}}")
endmacro()

file(READ "${SRC}" text)
string(REPLACE "\r\n" "\n" text "${text}")
if(NOT text MATCHES "\n$")
  string(APPEND text "\n")
endif()

set(out "")
set(joinable TRUE) # nothing before the first line
set(in_comment FALSE)
set(lineno 0)
while(NOT text STREQUAL "")
  string(FIND "${text}" "\n" nl)
  string(SUBSTRING "${text}" 0 ${nl} line)
  math(EXPR nl "${nl} + 1")
  string(SUBSTRING "${text}" ${nl} -1 text)
  math(EXPR lineno "${lineno} + 1")
  string(STRIP "${line}" line)
  set(where "${SRC}:${lineno}")

  if(in_comment)
    string(FIND "${line}" "*/" close)
    if(NOT close EQUAL -1)
      if(NOT line MATCHES "\\*/$")
        message(FATAL_ERROR "${where}: code after the end of a block comment")
      endif()
      set(in_comment FALSE)
    endif()
    continue()
  endif()
  if(line MATCHES "^/\\*")
    string(SUBSTRING "${line}" 2 -1 rest)
    string(FIND "${rest}" "*/" close)
    if(close EQUAL -1)
      set(in_comment TRUE)
    elseif(NOT rest MATCHES "\\*/$")
      message(FATAL_ERROR "${where}: code after the end of a block comment")
    endif()
    continue()
  endif()

  # The line as code pieces and string literals, in turn.
  set(rest "${line}")
  set(code "")
  while(NOT rest STREQUAL "")
    string(REGEX MATCH "^[^'\"]+" seg "${rest}")
    string(LENGTH "${seg}" n)
    string(SUBSTRING "${rest}" ${n} -1 rest)
    string(FIND "${seg}" "//" cut)
    if(NOT cut EQUAL -1)
      string(SUBSTRING "${seg}" 0 ${cut} seg)
      set(rest "")
    endif()
    # a "/" where an expression starts is a regular expression literal, not division
    if(seg MATCHES "(^|[-(,=:[!&|?{};+*%<>~^])[ \t]*/" OR
       seg MATCHES "(^|[^A-Za-z0-9_$.])(return|typeof|case|void|delete|throw|in|of|yield)[ \t]*/")
      message(FATAL_ERROR "${where}: a regular expression literal (use new RegExp(\"...\"))")
    endif()
    foreach(bad IN ITEMS "/*" "`")
      string(FIND "${seg}" "${bad}" at)
      if(NOT at EQUAL -1)
        message(FATAL_ERROR "${where}: \"${bad}\" in code is not supported by embed_js.cmake")
      endif()
    endforeach()
    compact_code(seg)
    if(NOT code STREQUAL "" OR NOT rest STREQUAL "")
      string(STRIP "${seg}" seg) # next to a string literal
    endif()
    string(APPEND code "${seg}")
    if(rest STREQUAL "")
      break()
    endif()
    string(REGEX MATCH "^\"([^\"\\\\]|\\\\.)*\"" str "${rest}")
    if(str STREQUAL "")
      string(REGEX MATCH "^'([^'\\\\]|\\\\.)*'" str "${rest}")
    endif()
    if(str STREQUAL "")
      message(FATAL_ERROR "${where}: a string literal not closed on its line")
    endif()
    string(APPEND code "${str}")
    string(LENGTH "${str}" n)
    string(SUBSTRING "${rest}" ${n} -1 rest)
  endwhile()
  string(STRIP "${code}" code)
  if(code STREQUAL "")
    continue()
  endif()

  if(NOT joinable AND NOT code MATCHES "^[])}]")
    string(APPEND out "\n")
  endif()
  string(APPEND out "${code}")
  if(code MATCHES "([;{,([=:?]|&&|\\|\\|)$")
    set(joinable TRUE)
  else()
    set(joinable FALSE)
  endif()
endwhile()
if(in_comment)
  message(FATAL_ERROR "${SRC}: a block comment is not closed")
endif()
string(APPEND out "\n")

string(TOLOWER "${out}" lower)
foreach(bad IN ITEMS "</script" "<!--")
  string(FIND "${lower}" "${bad}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "${SRC}: \"${bad}\" cannot appear inside an HTML <script>")
  endif()
endforeach()

# The text as bytes (file(READ ... HEX) keeps them exactly), 16 to a line.
file(WRITE "${OUT_JS}" "${out}")
file(READ "${OUT_JS}" hex HEX)
string(LENGTH "${hex}" size)
math(EXPR size "${size} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen)
string(REGEX REPLACE "(${sixteen})" "\\1\n    " bytes "${bytes}")
get_filename_component(src "${SRC}" NAME)
file(WRITE "${OUT_C}"
  "/* Generated by display/embed_js.cmake from display/js/${src} (${size} bytes): do not edit. */\n"
  "#include \"figure_js.h\"\n\n"
  "const char ${NAME}[] = {\n    ${bytes}0x00\n};\n")
