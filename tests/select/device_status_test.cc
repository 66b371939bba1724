// The device probe's words on a machine without an NVIDIA GPU (issue 15 item 7): they say that
// no driver or GPU was found, then keep the CUDA runtime's own text.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "mxq/device.h"

namespace mxq {
namespace {

TEST(DeviceStatus, MachineWithoutGpuSaysSo) {
  const Device& d = this_device();
  if (!d.cuda_built) {
    EXPECT_NE(d.cuda_status.find("built without the CUDA part"), std::string::npos)
        << d.cuda_status;
    EXPECT_TRUE(d.gpus.empty());
    return;
  }
  if (std::filesystem::exists("/proc/driver/nvidia/version"))
    GTEST_SKIP() << "an NVIDIA driver is installed here; status: '" << d.cuda_status << "'";
  EXPECT_TRUE(d.gpus.empty());
  EXPECT_EQ(d.cuda_status.rfind("no NVIDIA driver or GPU found (CUDA runtime: ", 0), 0u)
      << d.cuda_status;
  EXPECT_EQ(d.cuda_status.back(), ')') << d.cuda_status;
}

}  // namespace
}  // namespace mxq
