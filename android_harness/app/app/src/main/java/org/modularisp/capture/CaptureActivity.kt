// One RAW_SENSOR capture written as a DNG, for runtime_py/capture.py. NOT compiled in this repository (no Android
// SDK here); see android_harness/app/README.md for how to build it and what was verified.
//
// Started over adb (capture.py does this, after granting the permissions):
//
//   adb shell pm grant org.modularisp.capture android.permission.CAMERA
//   adb shell appops set org.modularisp.capture MANAGE_EXTERNAL_STORAGE allow
//   adb shell am start -W -n org.modularisp.capture/.CaptureActivity \
//       --es output /sdcard/DCIM/isp_capture/shot.dng [--es camera_id 0] [--ei iso 100] [--el exposure_ns 10000000]
//
// Extras
//   output       String, required: absolute path of the DNG to write (must end in .dng; its folder is created)
//   camera_id    String: a Camera2 id (default: the first back-facing camera with the RAW capability)
//   iso          Int:  SENSOR_SENSITIVITY  } both, for a manual exposure (AE off); neither: auto-exposure
//   exposure_ns  Long: SENSOR_EXPOSURE_TIME }
//   timeout_ms   Long: give up after this long (default 20000)
//
// File protocol (identical to the stand-in android_harness/app/stand_in/isp_capture.sh):
//   <dir>/.<name>.dng.pending   the DNG while it is written (never under the final name while incomplete)
//   <output>.json               capture metadata, written (temporary file + rename) before the DNG is renamed
//   <output>                    renamed into place last: its presence means the capture is complete
//   <output>.error              one line of text instead, when the capture failed
// Logs go to logcat under the tag IspCapture.
package org.modularisp.capture

import android.Manifest
import android.app.Activity
import android.content.Context
import android.content.pm.PackageManager
import android.graphics.ImageFormat
import android.hardware.camera2.CameraAccessException
import android.hardware.camera2.CameraCaptureSession
import android.hardware.camera2.CameraCharacteristics
import android.hardware.camera2.CameraDevice
import android.hardware.camera2.CameraManager
import android.hardware.camera2.CameraMetadata
import android.hardware.camera2.CaptureRequest
import android.hardware.camera2.CaptureResult
import android.hardware.camera2.DngCreator
import android.hardware.camera2.TotalCaptureResult
import android.hardware.camera2.params.OutputConfiguration
import android.hardware.camera2.params.SessionConfiguration
import android.media.Image
import android.media.ImageReader
import android.os.Build
import android.os.Bundle
import android.os.Environment
import android.os.Handler
import android.os.HandlerThread
import android.util.Log
import android.util.Size
import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.io.FileOutputStream
import java.util.concurrent.Executor
import java.util.concurrent.atomic.AtomicBoolean

private const val TAG = "IspCapture"
private const val DEFAULT_TIMEOUT_MS = 20_000L
private const val AE_MAX_FRAMES = 45            // preview frames to wait for auto-exposure to settle

class CaptureActivity : Activity() {

    private lateinit var output: File
    private val thread = HandlerThread("isp-capture").apply { start() }
    private val handler = Handler(thread.looper)
    private val executor = Executor { handler.post(it) }
    private val finished = AtomicBoolean(false)

    private var camera: CameraDevice? = null
    private var session: CameraCaptureSession? = null
    private var rawReader: ImageReader? = null
    private var previewReader: ImageReader? = null
    private var characteristics: CameraCharacteristics? = null
    private var cameraId: String = ""
    private var rawImage: Image? = null
    private var rawResult: TotalCaptureResult? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val path = intent.getStringExtra("output")
        if (path == null || !path.startsWith("/") || !path.endsWith(".dng")) {
            Log.e(TAG, "extra 'output' must be an absolute path ending in .dng, got $path")
            // nowhere to write an .error file: the host times out and shows this log line
            finish()
            return
        }
        output = File(path)
        File(path + ".error").delete()
        handler.postDelayed({ fail("no capture within ${timeoutMs()} ms") }, timeoutMs())
        handler.post { start() }
    }

    private fun timeoutMs(): Long = intent.getLongExtra("timeout_ms", DEFAULT_TIMEOUT_MS)

    // ------------------------------------------------------------------------------------------------- camera

    private fun start() {
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            return fail("CAMERA permission not granted: adb shell pm grant $packageName android.permission.CAMERA")
        }
        if (Build.VERSION.SDK_INT >= 30 && !Environment.isExternalStorageManager()) {
            return fail("no access to ${output.parent}: adb shell appops set $packageName MANAGE_EXTERNAL_STORAGE allow")
        }
        val dir = output.parentFile
        if (dir == null || !(dir.isDirectory || dir.mkdirs())) return fail("cannot create the folder ${output.parent}")
        val manager = getSystemService(Context.CAMERA_SERVICE) as CameraManager
        try {
            cameraId = intent.getStringExtra("camera_id") ?: firstRawBackCamera(manager)
                ?: return fail("no back camera with the RAW capability on this device")
            val chars = manager.getCameraCharacteristics(cameraId)
            val caps = chars.get(CameraCharacteristics.REQUEST_AVAILABLE_CAPABILITIES) ?: IntArray(0)
            if (CameraMetadata.REQUEST_AVAILABLE_CAPABILITIES_RAW !in caps) {
                return fail("camera $cameraId has no RAW capability")
            }
            characteristics = chars
            val map = chars.get(CameraCharacteristics.SCALER_STREAM_CONFIGURATION_MAP)
                ?: return fail("camera $cameraId has no stream configuration map")
            val rawSize = map.getOutputSizes(ImageFormat.RAW_SENSOR).maxByOrNull { it.width.toLong() * it.height }
                ?: return fail("camera $cameraId lists no RAW_SENSOR size")
            val previewSize = map.getOutputSizes(ImageFormat.YUV_420_888)
                .filter { it.width <= 1280 && it.height <= 960 }.maxByOrNull { it.width * it.height }
                ?: Size(640, 480)
            rawReader = ImageReader.newInstance(rawSize.width, rawSize.height, ImageFormat.RAW_SENSOR, 2).apply {
                setOnImageAvailableListener({ r ->
                    r.acquireNextImage()?.let { img -> rawImage = img; maybeWrite() }
                }, handler)
            }
            previewReader = ImageReader.newInstance(previewSize.width, previewSize.height,
                ImageFormat.YUV_420_888, 4).apply {
                setOnImageAvailableListener({ r -> r.acquireLatestImage()?.close() }, handler)
            }
            Log.i(TAG, "camera $cameraId, RAW ${rawSize.width}x${rawSize.height}, output $output")
            manager.openCamera(cameraId, executor, object : CameraDevice.StateCallback() {
                override fun onOpened(device: CameraDevice) {
                    camera = device
                    configure(device)
                }

                override fun onDisconnected(device: CameraDevice) = fail("camera $cameraId disconnected")
                override fun onError(device: CameraDevice, error: Int) = fail("camera $cameraId error $error")
            })
        } catch (e: CameraAccessException) {
            fail("camera access: ${e.message}")
        } catch (e: SecurityException) {
            fail("camera permission: ${e.message}")
        }
    }

    private fun firstRawBackCamera(manager: CameraManager): String? = manager.cameraIdList.firstOrNull { id ->
        val c = manager.getCameraCharacteristics(id)
        c.get(CameraCharacteristics.LENS_FACING) == CameraMetadata.LENS_FACING_BACK &&
            CameraMetadata.REQUEST_AVAILABLE_CAPABILITIES_RAW in
            (c.get(CameraCharacteristics.REQUEST_AVAILABLE_CAPABILITIES) ?: IntArray(0))
    }

    private fun configure(device: CameraDevice) {
        val outputs = listOf(OutputConfiguration(previewReader!!.surface), OutputConfiguration(rawReader!!.surface))
        val config = SessionConfiguration(SessionConfiguration.SESSION_REGULAR, outputs, executor,
            object : CameraCaptureSession.StateCallback() {
                override fun onConfigured(s: CameraCaptureSession) {
                    session = s
                    converge(s, device)
                }

                override fun onConfigureFailed(s: CameraCaptureSession) =
                    fail("could not configure a RAW + preview session on camera $cameraId")
            })
        device.createCaptureSession(config)
    }

    /** Preview frames until auto-exposure / white balance settle (or AE_MAX_FRAMES), then the RAW capture. */
    private fun converge(s: CameraCaptureSession, device: CameraDevice) {
        val preview = device.createCaptureRequest(CameraDevice.TEMPLATE_PREVIEW).apply {
            addTarget(previewReader!!.surface)
            set(CaptureRequest.CONTROL_MODE, CameraMetadata.CONTROL_MODE_AUTO)
            set(CaptureRequest.CONTROL_AF_MODE, CameraMetadata.CONTROL_AF_MODE_CONTINUOUS_PICTURE)
        }.build()
        var frames = 0
        val started = AtomicBoolean(false)
        s.setRepeatingRequest(preview, object : CameraCaptureSession.CaptureCallback() {
            override fun onCaptureCompleted(ss: CameraCaptureSession, r: CaptureRequest, result: TotalCaptureResult) {
                frames++
                val ae = result.get(CaptureResult.CONTROL_AE_STATE)
                val settled = ae == null || ae == CaptureResult.CONTROL_AE_STATE_CONVERGED ||
                    ae == CaptureResult.CONTROL_AE_STATE_FLASH_REQUIRED
                if ((settled && frames >= 5 || frames >= AE_MAX_FRAMES) && started.compareAndSet(false, true)) {
                    ss.stopRepeating()
                    still(ss, device)
                }
            }
        }, handler)
    }

    private fun still(s: CameraCaptureSession, device: CameraDevice) {
        val iso = intent.getIntExtra("iso", -1)
        val exposure = intent.getLongExtra("exposure_ns", -1L)
        val request = device.createCaptureRequest(CameraDevice.TEMPLATE_STILL_CAPTURE).apply {
            addTarget(rawReader!!.surface)
            set(CaptureRequest.STATISTICS_LENS_SHADING_MAP_MODE, CameraMetadata.STATISTICS_LENS_SHADING_MAP_MODE_ON)
            if (iso > 0 && exposure > 0) {
                set(CaptureRequest.CONTROL_AE_MODE, CameraMetadata.CONTROL_AE_MODE_OFF)
                set(CaptureRequest.SENSOR_SENSITIVITY, iso)
                set(CaptureRequest.SENSOR_EXPOSURE_TIME, exposure)
            }
        }.build()
        s.capture(request, object : CameraCaptureSession.CaptureCallback() {
            override fun onCaptureCompleted(ss: CameraCaptureSession, r: CaptureRequest, result: TotalCaptureResult) {
                rawResult = result
                maybeWrite()
            }

            override fun onCaptureFailed(ss: CameraCaptureSession, r: CaptureRequest,
                                         failure: android.hardware.camera2.CaptureFailure) =
                fail("RAW capture failed (reason ${failure.reason})")
        }, handler)
    }

    // ------------------------------------------------------------------------------------------------- writing

    /** Both the image and its capture result are needed by DngCreator; whichever arrives second writes. */
    private fun maybeWrite() {
        val image = rawImage ?: return
        val result = rawResult ?: return
        if (finished.get()) return
        val chars = characteristics ?: return fail("no camera characteristics")
        val pending = File(output.parentFile, ".${output.name}.pending")
        try {
            DngCreator(chars, result).use { dng ->
                dng.setOrientation(android.media.ExifInterface.ORIENTATION_NORMAL)
                FileOutputStream(pending).use { stream ->
                    dng.writeImage(stream, image)
                    stream.flush()
                    stream.fd.sync()
                }
            }
            writeAtomically(File(output.path + ".json"), metadata(chars, result, image).toString(1))
            if (!pending.renameTo(output)) throw java.io.IOException("rename $pending -> $output failed")
            Log.i(TAG, "wrote $output (${output.length()} bytes)")
            done()
        } catch (e: Exception) {
            pending.delete()
            fail("writing the DNG failed: ${e.javaClass.simpleName}: ${e.message}")
        } finally {
            image.close()
        }
    }

    private fun metadata(chars: CameraCharacteristics, result: TotalCaptureResult, image: Image): JSONObject {
        val json = JSONObject()
        json.put("stand_in", false)
        json.put("component", "$packageName/.CaptureActivity")
        json.put("camera_id", cameraId)
        json.put("width", image.width)
        json.put("height", image.height)
        json.put("sensor_timestamp_ns", result.get(CaptureResult.SENSOR_TIMESTAMP) ?: JSONObject.NULL)
        json.put("iso", result.get(CaptureResult.SENSOR_SENSITIVITY) ?: JSONObject.NULL)
        json.put("exposure_ns", result.get(CaptureResult.SENSOR_EXPOSURE_TIME) ?: JSONObject.NULL)
        json.put("frame_duration_ns", result.get(CaptureResult.SENSOR_FRAME_DURATION) ?: JSONObject.NULL)
        json.put("cfa", chars.get(CameraCharacteristics.SENSOR_INFO_COLOR_FILTER_ARRANGEMENT) ?: JSONObject.NULL)
        json.put("white_level", chars.get(CameraCharacteristics.SENSOR_INFO_WHITE_LEVEL) ?: JSONObject.NULL)
        result.get(CaptureResult.SENSOR_DYNAMIC_BLACK_LEVEL)?.let { json.put("black_level", JSONArray(it.toList())) }
        result.get(CaptureResult.SENSOR_NEUTRAL_COLOR_POINT)?.let { n ->
            json.put("as_shot_neutral", JSONArray(n.map { it.toDouble() }))
        }
        json.put("sensor_orientation", chars.get(CameraCharacteristics.SENSOR_ORIENTATION) ?: JSONObject.NULL)
        json.put("manufacturer", Build.MANUFACTURER)
        json.put("model", Build.MODEL)
        json.put("sdk", Build.VERSION.SDK_INT)
        json.put("bytes", File(output.parentFile, ".${output.name}.pending").length())
        json.put("created_unix_s", System.currentTimeMillis() / 1000)
        return json
    }

    private fun writeAtomically(target: File, text: String) {
        val tmp = File(target.path + ".tmp")
        FileOutputStream(tmp).use { it.write(text.toByteArray()); it.fd.sync() }
        if (!tmp.renameTo(target)) throw java.io.IOException("rename $tmp -> $target failed")
    }

    // ------------------------------------------------------------------------------------------------- ending

    private fun fail(message: String) {
        if (!finished.compareAndSet(false, true)) return
        Log.e(TAG, message)
        try {
            writeAtomically(File(output.path + ".error"), message + "\n")
        } catch (e: Exception) {
            Log.e(TAG, "could not write ${output.path}.error: ${e.message}")
        }
        close()
    }

    private fun done() {
        if (!finished.compareAndSet(false, true)) return
        close()
    }

    private fun close() {
        handler.removeCallbacksAndMessages(null)
        try { session?.close() } catch (_: Exception) {}
        try { camera?.close() } catch (_: Exception) {}
        rawReader?.close()
        previewReader?.close()
        runOnUiThread { finish() }
    }

    override fun onDestroy() {
        thread.quitSafely()
        super.onDestroy()
    }
}
