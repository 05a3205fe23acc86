//===- Error.h - Errors as values across library boundaries -----*- C++ -*-===//
//
// The spec, codegen and runtime layers return Expected<T>; the C ABI turns
// the message into a status code + text. No exceptions cross these APIs.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SUPPORT_ERROR_H
#define MOELORA_SUPPORT_ERROR_H

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace moelora {

struct Error {
  std::string message;
};

inline Error makeError(std::string message) {
  return Error{std::move(message)};
}

template <typename T> class [[nodiscard]] Expected {
public:
  Expected(T value) : storage(std::move(value)) {}
  Expected(Error error) : storage(std::move(error)) {}

  explicit operator bool() const { return storage.index() == 0; }
  T &operator*() { return std::get<0>(storage); }
  const T &operator*() const { return std::get<0>(storage); }
  T *operator->() { return &std::get<0>(storage); }
  const T *operator->() const { return &std::get<0>(storage); }
  const Error &error() const { return std::get<1>(storage); }
  T take() { return std::move(std::get<0>(storage)); }

private:
  std::variant<T, Error> storage;
};

/// Expected<void>: success or an error.
class [[nodiscard]] Status {
public:
  Status() = default;
  Status(Error error) : err(std::move(error)), failed(true) {}
  static Status ok() { return Status(); }
  explicit operator bool() const { return !failed; }
  const Error &error() const { return err; }

private:
  Error err;
  bool failed = false;
};

} // namespace moelora

#endif // MOELORA_SUPPORT_ERROR_H
